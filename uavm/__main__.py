import sys

from .cli import main

if __name__ == "__main__":  # not when a decoder process imports the parent's main module
    sys.exit(main())
