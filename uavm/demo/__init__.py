"""The embedded demo: generated media and the recipe that trains the models in weights/.

    synth.py    numpy frames and waveforms -> real encoded files (tests and benchmarks use it)
    corpus.py   the generated audio-visual event corpus (`uavm synth`)
    build.py    the whole demo recipe (`uavm build-demo`)
"""
