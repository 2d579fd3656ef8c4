"""The embedded demo: generated media and the recipe that trains the models in weights/.

    synth.py    numpy frames and waveforms -> real encoded files (tests and benchmarks use it)
    events.py   a generated clip's format and its events
    sounds.py   the corpus's sounds (each kind's recipe, a clip's soundtrack)
    pictures.py the corpus's pictures (the sprites, a clip's frames and each event's box)
    corpus.py   the generated audio-visual event corpus (`uavm synth`)
    build.py    the whole demo recipe (`uavm build-demo`)
"""
