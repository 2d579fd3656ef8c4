"""`python -m uavm.app ARGS` is `uavm app ARGS`."""
import sys

from uavm.cli import main

if __name__ == "__main__":
    sys.exit(main(["app", *sys.argv[1:]]))
