"""``python -m membra ...`` runs the ``membra`` command (so ``torchrun -m membra train ...``
works)."""

from .cli import main

if __name__ == "__main__":
    main()
