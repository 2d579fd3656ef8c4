"""Tools on top of everything: measurements that print figures (never tests).

    bench.py   where the time goes, from a clip to an answer (`uavm bench`)
    soak.py    a fresh app on loopback under many clients, and its memory (`uavm soak`)
"""
