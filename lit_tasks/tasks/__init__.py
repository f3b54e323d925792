"""One LightningModule per task. Configs name them by class path, e.g.
`lit_tasks.tasks.ImageClassification`."""

from lit_tasks.tasks.audio_classification import AudioClassification
from lit_tasks.tasks.causal_lm import CausalLanguageModeling
from lit_tasks.tasks.denoising import DenoisingPretraining
from lit_tasks.tasks.image_classification import ImageClassification
from lit_tasks.tasks.masked_lm import MaskedLanguageModeling
from lit_tasks.tasks.object_detection import ObjectDetection
from lit_tasks.tasks.question_answering import QuestionAnswering
from lit_tasks.tasks.seq2seq import Summarization, Translation
from lit_tasks.tasks.speech_recognition import SpeechRecognition
from lit_tasks.tasks.text_classification import TextClassification
from lit_tasks.tasks.token_classification import TokenClassification
from lit_tasks.tasks.wav2vec2_pretraining import Wav2Vec2Pretraining

__all__ = [
    "AudioClassification", "CausalLanguageModeling", "DenoisingPretraining", "ImageClassification",
    "MaskedLanguageModeling", "ObjectDetection", "QuestionAnswering", "SpeechRecognition", "Summarization", "TextClassification", "TokenClassification", "Translation", "Wav2Vec2Pretraining",
]
