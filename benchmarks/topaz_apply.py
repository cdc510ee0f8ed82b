"""Apply a Topaz-Denoise model file with Topaz's own code (run with the Topaz venv's python).

Topaz-Denoise 0.3.x's ``topaz denoise -m FILE`` never uses FILE: its load branch builds
``Denoise(args.arch)`` (the pretrained ``unet``) whatever ``-m`` says, so a model trained with
``topaz denoise -a -b`` cannot be applied from the command line. This wrapper swaps in the
trained model and then runs Topaz's unchanged command with its defaults.

Usage (benchmarks/denoise.py calls it):
    TOPAZ_VENV/bin/python benchmarks/topaz_apply.py MODEL.sav -o OUTDIR -d -1 MIC.mrc ...
"""

from __future__ import annotations

import sys


def main() -> None:
    import topaz.commands.denoise as command
    from topaz.denoise import Denoise

    model_path, argv = sys.argv[1], sys.argv[2:]

    def trained(arch: str, use_cuda: bool = False, dims: int = 2) -> Denoise:
        print(f"# topaz_apply: using trained model {model_path} (not {arch})", file=sys.stderr)
        return Denoise(model_path, use_cuda, dims)

    command.Denoise = trained
    parser = command.add_arguments()
    command.main(parser.parse_args(["-m", model_path, *argv]))


if __name__ == "__main__":
    main()
