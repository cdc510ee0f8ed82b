"""``pick predict --exclude-masks DIR`` reads DIR/<stem>.mrc: masks named otherwise were
silently ignored (pick/run.py)."""

from __future__ import annotations

import numpy as np
import pytest

from draco_em.errors import DracoInputError
from draco_em.io.batch import expand_inputs
from draco_em.io.mrc import write_mrc
from draco_em.pick.exclusion import missing_masks_warning


def test_masks_named_after_no_micrograph_are_an_error(tmp_path) -> None:
    image = np.zeros((32, 32), np.float32)
    for name in ("mics/a.mrc", "mics/b.mrc", "masks/a_mask.mrc"):  # MicrographCleaner's names
        (tmp_path / name).parent.mkdir(exist_ok=True)
        write_mrc(tmp_path / name, image, pixel_size=1.0)
    items = expand_inputs([tmp_path / "mics"]).items
    with pytest.raises(DracoInputError, match=r"holds e\.g\. a_mask\.mrc"):
        missing_masks_warning(tmp_path / "masks", items)
    write_mrc(tmp_path / "masks" / "a.mrc", image, pixel_size=1.0)
    warning = missing_masks_warning(tmp_path / "masks", items)
    assert warning is not None and "1 of 2 micrographs have no mask (e.g. b.mrc)" in warning
    write_mrc(tmp_path / "masks" / "b.mrc", image, pixel_size=1.0)
    assert missing_masks_warning(tmp_path / "masks", items) is None
    assert missing_masks_warning(None, items) is None
