"""Speech data for tests and benchmarks: in-process eSpeak NG synthesis and
a synthetic connected-digits corpus in LibriSpeech layout."""

from speechbrain_prune.data.espeak import EspeakError, EspeakSynthesizer
from speechbrain_prune.data.synth_corpus import (
    SPLITS,
    VOCABULARY,
    make_digits_corpus,
    prepare_csv,
)

__all__ = [
    "EspeakError",
    "EspeakSynthesizer",
    "SPLITS",
    "VOCABULARY",
    "make_digits_corpus",
    "prepare_csv",
]
