"""In-process speech synthesis with eSpeak NG, using only pip packages.

The ``espeakng_loader`` package ships ``libespeak-ng`` and its voice data;
this module drives that library through ``ctypes`` in synchronous mode, so
waveforms come back as numpy arrays without any subprocess, audio device or
temporary file. Voice variants (``"en-us+m1"``, ``"en+f2"``, ...), speaking
rates and pitches turn the one engine into many distinct "speakers".

eSpeak NG keeps its whole state (current voice, parameters, output callback)
in process-wide globals, so the library is loaded and initialised once per
process and every call into it holds one module-level lock.

Authors
 * speechbrain-prune team 2026
"""

import ctypes
import functools
import math
import os
import threading

import numpy as np

__all__ = ["EspeakError", "EspeakSynthesizer"]

# Constants from eSpeak NG's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EE_OK = 0
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_PARAM_WORDGAP = 7
_PHONEMES_IPA = 0x02

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _EspeakVoice(ctypes.Structure):
    """Layout of ``espeak_VOICE`` (speak_lib.h)."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


class EspeakError(RuntimeError):
    """Raised when libespeak-ng cannot be loaded, initialised or run."""


class _Library:
    """The process-wide, initialised libespeak-ng (use through ``_get``)."""

    def __init__(self, library_path, data_path):
        try:
            lib = ctypes.CDLL(library_path)
        except OSError as err:
            raise EspeakError(
                f"Cannot load libespeak-ng from {library_path!r}: {err}. "
                "Reinstall the 'espeakng-loader' pip package."
            ) from err
        _declare(lib)
        # Without DONT_EXIT the library calls exit() on missing data.
        native_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS,
            0,
            data_path.encode(),
            _INITIALIZE_DONT_EXIT,
        )
        if native_rate <= 0:
            raise EspeakError(
                f"espeak_Initialize failed (returned {native_rate}) with the "
                f"voice data at {data_path!r}."
            )
        self.lib = lib
        self.library_path = library_path
        self.data_path = data_path
        self.sample_rate = native_rate
        self.version = lib.espeak_Info(None).decode()
        self._chunks = []
        # ctypes does not keep the callback alive: the library would call
        # freed memory if this reference were dropped.
        self._callback = _SYNTH_CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n_samples, events):
        if wav and n_samples > 0:
            self._chunks.append(ctypes.string_at(wav, 2 * n_samples))
        return 0

    def set_voice(self, voice):
        """Select ``voice``; raise ValueError if eSpeak does not know it."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            # On failure eSpeak silently keeps the previous voice.
            raise ValueError(f"eSpeak NG has no voice {voice!r}")
        if "+" in voice:
            # An unknown variant is ignored with a success code, so check
            # that the variant really made it into the current voice.
            variant = voice.split("+", 1)[1].lower()
            current = self.lib.espeak_GetCurrentVoice().contents.identifier
            if not (current or b"").decode().lower().endswith("+" + variant):
                raise ValueError(
                    f"eSpeak NG has no voice variant {variant!r} (see "
                    "EspeakSynthesizer.list_variants())"
                )

    def set_parameter(self, parameter, value):
        """Set an absolute eSpeak parameter value."""
        if self.lib.espeak_SetParameter(parameter, int(value), 0) != _EE_OK:
            raise EspeakError(f"espeak_SetParameter({parameter}) failed")

    def synthesize(self, text, seed):
        """Speak ``text`` with the current settings; int16 samples."""
        # Breathy variants (f2, f3, f5, ...) mix in noise from a generator
        # that the library seeds from the clock.
        self.lib.espeak_ng_SetRandSeed(seed)
        self._chunks = []
        data = text.encode() + b"\0"
        status = self.lib.espeak_Synth(
            data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        if status != _EE_OK:
            raise EspeakError(f"espeak_Synth failed with status {status}")
        self.lib.espeak_Synchronize()
        samples = np.frombuffer(b"".join(self._chunks), dtype=np.int16)
        self._chunks = []
        return samples

    def phonemes(self, text, mode):
        """Phonemes of ``text`` for the current voice, clause by clause."""
        buffer = ctypes.create_string_buffer(text.encode())
        pointer = ctypes.c_char_p(ctypes.addressof(buffer))
        clauses = []
        # The library advances ``pointer`` one clause per call and sets it
        # to NULL after the last one.
        while pointer.value:
            result = self.lib.espeak_TextToPhonemes(
                ctypes.byref(pointer), _CHARS_UTF8, mode
            )
            if result:
                clauses.append(result.decode().strip())
        return " ".join(c for c in clauses if c)


def _declare(lib):
    """Declare the C signatures so ctypes converts arguments correctly."""
    lib.espeak_Initialize.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
    ]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_GetCurrentVoice.argtypes = []
    lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(_EspeakVoice)
    lib.espeak_SetParameter.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_TextToPhonemes.argtypes = [
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None


_LOCK = threading.RLock()
_LIBRARY = None


def _default_paths():
    try:
        import espeakng_loader
    except ImportError as err:
        raise EspeakError(
            "The 'espeakng-loader' pip package is needed for speech "
            "synthesis: pip install espeakng-loader"
        ) from err
    try:
        return (
            espeakng_loader.get_library_path(),
            espeakng_loader.get_data_path(),
        )
    except RuntimeError as err:
        raise EspeakError(f"espeakng-loader is incomplete: {err}") from err


def _get(library_path=None, data_path=None):
    """Return the process-wide library, loading it on first use."""
    global _LIBRARY
    with _LOCK:
        if _LIBRARY is None:
            if library_path is None or data_path is None:
                default_library, default_data = _default_paths()
                library_path = library_path or default_library
                data_path = data_path or default_data
            _LIBRARY = _Library(library_path, data_path)
        elif library_path not in (None, _LIBRARY.library_path) or (
            data_path not in (None, _LIBRARY.data_path)
        ):
            raise EspeakError(
                "libespeak-ng is already initialised from "
                f"{_LIBRARY.library_path!r} with data {_LIBRARY.data_path!r}; "
                "it keeps global state, so a process can use only one."
            )
        return _LIBRARY


class EspeakSynthesizer:
    """Text-to-speech with eSpeak NG, running inside this process.

    Instances are cheap: they all share one process-wide library, and each
    call sets voice, rate and pitch afresh under a lock, so instances may be
    used side by side and from several threads.

    eSpeak NG's pitch "flutter" (a slow wobble of the pitch) runs on across
    calls and cannot be reset, so the same call gives slightly different
    samples (same words and voice, lengths a few tens of samples apart)
    depending on what the process synthesised before. A fixed sequence of
    calls in a fresh process always gives identical audio.

    Arguments
    ---------
    sample_rate : int or None
        Sample rate of the returned waveforms, in Hz. ``None`` keeps eSpeak's
        native rate (22050 Hz).
    library_path : str or None
        Path of ``libespeak-ng``; ``None`` takes the one of ``espeakng_loader``.
    data_path : str or None
        Path of the ``espeak-ng-data`` folder; ``None`` takes the one of
        ``espeakng_loader``.

    Example
    -------
    >>> tts = EspeakSynthesizer()
    >>> wav, sr = tts.synthesize("seven", voice="en-us+f2", rate=180)
    >>> sr, wav.dtype
    (16000, dtype('float32'))
    >>> 0.2 < len(wav) / sr < 1.5
    True
    >>> tts.phonemes("seven")
    'sˈɛvən'
    """

    def __init__(self, sample_rate=16000, library_path=None, data_path=None):
        self._library = _get(library_path, data_path)
        self.native_sample_rate = self._library.sample_rate
        self.sample_rate = sample_rate or self.native_sample_rate
        self.version = self._library.version

    def synthesize(
        self,
        text,
        voice="en-us+m1",
        rate=160,
        pitch=50,
        pitch_range=50,
        word_gap=0,
        seed=0,
    ):
        """Speak ``text`` and return the waveform.

        Arguments
        ---------
        text : str
            Plain UTF-8 text (no SSML).
        voice : str
            eSpeak voice name, optionally with ``+variant``, e.g.
            ``"en-us"``, ``"en"`` (British), ``"en-us+m3"``, ``"en+f2"``.
        rate : int
            Speaking rate in words per minute, 80 to 450.
        pitch : int
            Base pitch, 0 to 100, relative to the voice's own range.
        pitch_range : int
            Intonation range, 0 (monotone) to 100.
        word_gap : int
            Extra pause between words, in units of 10 ms.
        seed : int
            Seed of eSpeak's noise generator, which breathy voices use.

        Returns
        -------
        waveform : numpy.ndarray
            Mono float32 samples in [-1, 1].
        sample_rate : int
            Sample rate of ``waveform`` in Hz.
        """
        _check_range("rate", rate, 80, 450)
        _check_range("pitch", pitch, 0, 100)
        _check_range("pitch_range", pitch_range, 0, 100)
        _check_range("word_gap", word_gap, 0, 1000)
        with _LOCK:
            self._library.set_voice(voice)
            self._library.set_parameter(_PARAM_RATE, rate)
            self._library.set_parameter(_PARAM_PITCH, pitch)
            self._library.set_parameter(_PARAM_RANGE, pitch_range)
            self._library.set_parameter(_PARAM_WORDGAP, word_gap)
            samples = self._library.synthesize(text, seed)
        waveform = samples.astype(np.float32) / 32768.0
        if self.sample_rate != self.native_sample_rate:
            waveform = _resample(
                waveform, self.native_sample_rate, self.sample_rate
            )
        return waveform, self.sample_rate

    def phonemes(self, text, voice="en-us", ipa=True):
        """Return eSpeak's phoneme transcription of ``text``.

        Arguments
        ---------
        text : str
            Plain text.
        voice : str
            Voice (language) whose pronunciation rules to use.
        ipa : bool
            True for IPA symbols, False for eSpeak's ASCII phoneme names.

        Returns
        -------
        str
            Words separated by spaces, stress marks included.
        """
        with _LOCK:
            self._library.set_voice(voice)
            return self._library.phonemes(text, _PHONEMES_IPA if ipa else 0)

    def list_variants(self):
        """Return the names of the voice variants usable after ``+``.

        Returns
        -------
        list of str
            Sorted variant names, e.g. ``["f1", ..., "m1", ...]``.
        """
        folder = os.path.join(self._library.data_path, "voices", "!v")
        return sorted(os.listdir(folder))


def _check_range(name, value, low, high):
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


def _resample(waveform, orig_rate, new_rate):
    """Band-limited resampling of a 1-D float32 array.

    A polyphase, Kaiser-windowed sinc filter in numpy. From 22050 to
    16000 Hz it is flat (within 0.02 dB) to 6 kHz, -6 dB at 7.2 kHz and
    attenuates all that would alias by 54 dB or more. torchaudio's
    resampler re-plans its convolution for every new input length and
    spins idle threads, which made it two to four times slower here.
    """
    up, down, half, bank = _filter_bank(orig_rate, new_rate)
    n_out = -(-len(waveform) * up // down)
    out_index = np.arange(n_out)
    # Output sample m lies at input time m * down / up: ``start`` is the
    # input sample before it and ``phase`` selects the matching filter.
    start = out_index * down // up
    phase = out_index * down % up
    padded = np.pad(waveform.astype(np.float32), (half, half + 1))
    taps = np.arange(1, 2 * half + 1)
    windows = padded[start[:, None] + taps[None, :]]
    return np.einsum("ij,ij->i", windows, bank[phase])


@functools.lru_cache(maxsize=None)
def _filter_bank(orig_rate, new_rate):
    """One lowpass filter per output phase, each row summing to 1."""
    common = math.gcd(orig_rate, new_rate)
    up, down = new_rate // common, orig_rate // common
    # A cutoff of 0.9 times the lower Nyquist frequency leaves room for the
    # transition band; 12 sinc zero crossings a side make it narrow.
    cutoff = 0.9 * min(1.0, new_rate / orig_rate)
    half = math.ceil(12 / cutoff)
    offsets = np.arange(-half + 1, half + 1)
    distance = offsets[None, :] - np.arange(up)[:, None] / up
    ratio = np.clip(1 - (distance / half) ** 2, 0, None)
    window = np.i0(7.0 * np.sqrt(ratio)) / np.i0(7.0)
    bank = cutoff * np.sinc(cutoff * distance) * window
    bank /= bank.sum(axis=1, keepdims=True)
    return up, down, half, bank.astype(np.float32)
