"""``python -m draco_em.cli`` (and ``torchrun -m draco_em.cli``) = the ``draco`` command."""

from draco_em.cli import main

if __name__ == "__main__":
    main()
