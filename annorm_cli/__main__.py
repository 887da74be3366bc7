"""`python -m annorm_cli ...` is `annorm ...` (torchrun uses it: `torchrun ... -m annorm_cli train class ...`)."""
from annorm_cli.cli.app import main

if __name__ == "__main__":
    main()
