"""``python -m draco_em`` runs the ``draco`` command line (same as the console script)."""

from draco_em.cli import main

if __name__ == "__main__":
    main()
