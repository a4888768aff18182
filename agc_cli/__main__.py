"""``python -m agc_cli`` (and ``torchrun -m agc_cli``) entry point."""

from agc_cli.cli.app import main

if __name__ == "__main__":
    main()
