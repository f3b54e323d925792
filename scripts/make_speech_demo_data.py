"""Write the bundled speech demo data: espeak-ng speaking digits, as 16-bit FLAC.

Two sets (what ``AudioDataModule`` reads):

    demo_data/spoken_digits/{train,val,test}/<digit word>/<split>_<n>.flac   one word, "zero".."nine"
    demo_data/spoken_digits/{train,val,test}.csv        path,label,voice,speed,pitch,duration
    demo_data/digit_strings/{train,val,test}/<split>_<n>.flac                2-5 digit words
    demo_data/digit_strings/{train,val,test}.jsonl      {"path", "text", "voice", "speed", "pitch", "duration"}

A voice is an espeak-ng accent plus a voice variant ("en-gb-scotland+f2"). Every split uses all
accents, but the variants (the "speakers") are disjoint: val and test voices never occur in
train. Each clip draws its voice, speed (words per minute), pitch and gain from a seeded numpy
generator, so re-running writes identical bytes; the split folders are rewritten from scratch.
espeak-ng speaks at 22050 Hz; clips are resampled with ``scipy.signal.resample_poly`` to
8 kHz (RATES), trimmed to the speech plus 30 ms,
and written as 16-bit FLAC with soundfile.

    apt-get install espeak-ng
    python scripts/make_speech_demo_data.py            # the bundled sizes; --scale 10 for more
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "demo_data"
# Stored sampling rates: the 8 kHz telephone band, half the bytes per clip of wav2vec2's 16 kHz,
# so more clips fit in the repo (the AudioDataModule resamples them to 16 kHz, as it would a
# user's telephone recordings).
RATES = {"spoken_digits": 8000, "digit_strings": 8000}
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# espeak-ng accents whose voices take a variant ("en" is British English; "en-gb" and
# "en-us-nyc" are not listed: the first ignores "+variant", the second speaks as "en-us").
ACCENTS = ["en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029"]
VARIANTS = {  # espeak-ng voice variants (`espeak-ng --voices=variant`), disjoint per split
    "train": ["m1", "m2", "m3", "m4", "m7", "m8", "f1", "f2", "f3", "Alex", "Annie", "Gene", "Lee", "Mike", "Storm",
              "Jacky", "adam", "david", "ed", "edward", "john", "max", "paul", "robert", "steph", "quincy", "caleb",
              "benjamin", "aunty", "norbert", "shelby", "travis", "victor", "grandma", "grandpa", "iven", "rob"],
    "val": ["m5", "f4", "Michael", "belinda"],
    "test": ["m6", "f5", "Andy", "linda"],
}
SPEED = (140, 220)  # words per minute (espeak-ng -s; default 175)
PITCH = (30, 70)  # espeak-ng -p, 0..99 (default 50)
GAIN = (0.2, 0.4)  # peak amplitude after trimming
# Clips per split at --scale 1 (kept small: both sets together are ~4 MB).
DIGIT_CLIPS = {"train": 30, "val": 6, "test": 6}  # per digit
STRING_CLIPS = {"train": 156, "val": 24, "test": 24}
SEEDS = {"spoken_digits": 1000, "digit_strings": 2000}
MARGIN = 0.03  # seconds kept before and after the speech


def speak(text: str, voice: str, speed: int, pitch: int, rate: int) -> np.ndarray:
    """espeak-ng's 22050 Hz output as float64 at `rate` Hz, trimmed to the speech plus a margin."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        check=True, capture_output=True,
    ).stdout
    x, sr = sf.read(io.BytesIO(wav), dtype="float64")
    if sr != 22050:
        raise RuntimeError(f"espeak-ng wrote {sr} Hz audio; expected 22050")
    g = math.gcd(rate, sr)
    x = resample_poly(x, rate // g, sr // g)  # 16 kHz: 320 / 441; 8 kHz: 160 / 441
    loud = np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max())
    margin = int(MARGIN * rate)
    return x[max(0, loud[0] - margin): loud[-1] + margin + 1]


def make_clip(rng: np.random.Generator, split: str, text: str, path: Path, rate: int) -> dict:
    voice = f"{ACCENTS[rng.integers(len(ACCENTS))]}+{VARIANTS[split][rng.integers(len(VARIANTS[split]))]}"
    speed, pitch = int(rng.integers(*SPEED, endpoint=True)), int(rng.integers(*PITCH, endpoint=True))
    gain = float(rng.uniform(*GAIN))
    x = speak(text, voice, speed, pitch, rate)
    x = x * (gain / np.abs(x).max())
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, rate, format="FLAC", subtype="PCM_16")
    return {"voice": voice, "speed": speed, "pitch": pitch, "duration": round(len(x) / rate, 4)}


def spoken_digits(out: Path, scale: int) -> dict[str, int]:
    rng = np.random.default_rng(SEEDS["spoken_digits"])
    counts = {}
    for split, per_digit in DIGIT_CLIPS.items():
        rows = []
        for i in range(per_digit * scale):
            for word in DIGITS:
                rel = f"{split}/{word}/{split}_{len(rows):05d}.flac"
                rows.append({"path": rel, "label": word, **make_clip(rng, split, word, out / rel, RATES["spoken_digits"])})
        with open(out / f"{split}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["path", "label", "voice", "speed", "pitch", "duration"])
            writer.writeheader()
            writer.writerows(rows)
        counts[split] = len(rows)
    return counts


def digit_strings(out: Path, scale: int) -> dict[str, int]:
    rng = np.random.default_rng(SEEDS["digit_strings"])
    counts = {}
    for split, n in STRING_CLIPS.items():
        rows = []
        for i in range(n * scale):
            text = " ".join(DIGITS[d] for d in rng.integers(10, size=int(rng.integers(2, 5, endpoint=True))))
            rel = f"{split}/{split}_{i:05d}.flac"
            rows.append({"path": rel, "text": text, **make_clip(rng, split, text, out / rel, RATES["digit_strings"])})
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        counts[split] = len(rows)
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="parent folder of spoken_digits/ and digit_strings/")
    p.add_argument("--scale", type=int, default=1, help="multiply the clips per split (1: the bundled sizes)")
    args = p.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng not found. Install it with:  sudo apt-get install espeak-ng   (Debian/Ubuntu)\n"
              "or: brew install espeak-ng (macOS).", file=sys.stderr)
        return 1
    for name, make in (("spoken_digits", spoken_digits), ("digit_strings", digit_strings)):
        out = args.out / name
        for split in DIGIT_CLIPS:  # start clean so a smaller --scale leaves no stale files
            if (out / split).exists():
                shutil.rmtree(out / split)
        out.mkdir(parents=True, exist_ok=True)
        counts = make(out, args.scale)
        print(f"{out}: " + ", ".join(f"{split} {n}" for split, n in counts.items()) + " clips")
    return 0


if __name__ == "__main__":
    sys.exit(main())
