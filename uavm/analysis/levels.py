"""The conditions a robustness run knows, their units and default levels (no torch: the
CLI's help reads them). What each does: ``uavm.analysis.conditions``."""

MISSING = ("audio_missing", "video_missing")
SPANS = ("audio_mute", "video_blank")
DEGRADE = ("audio_snr", "video_blur", "video_size", "video_fps")
KINDS = MISSING + SPANS + DEGRADE
# each kind's default levels, mildest first (the plain set comes before them)
DEFAULTS = {"audio_missing": [round(0.1 * i, 1) for i in range(1, 11)], "video_missing": [round(0.1 * i, 1) for i in range(1, 11)],
            "audio_mute": [2.0, 4.0, 6.0, 8.0, 10.0], "video_blank": [2.0, 4.0, 6.0, 8.0, 10.0],
            "audio_snr": [20.0, 10.0, 0.0, -10.0, -20.0], "video_blur": [1.0, 2.0, 4.0, 8.0, 16.0],
            "video_size": [64.0, 32.0, 16.0, 8.0, 4.0], "video_fps": [1.0, 0.5, 0.25, 0.2, 0.1]}
UNITS = {"audio_missing": "share", "video_missing": "share", "audio_mute": "s", "video_blank": "s",
         "audio_snr": "dB", "video_blur": "px", "video_size": "px", "video_fps": "fps"}
