"""2,000 byte mutations of real PNG, JPEG and list files through the dataset readers: every case ends in
a DadaError or a well-formed item; never another exception, a crash, a hang or a malformed array (the
10,000-case campaign: ``python benchmarks/faults.py --only fuzz``)."""

import pytest

from reader_fuzz import fuzz


@pytest.mark.slow
def test_reader_fuzz_2000_cases_only_our_error_or_a_well_formed_item(tmp_path):
    report = fuzz(tmp_path, cases=2000, seed=0)
    assert report.cases == 2000
    assert report.findings == []
    assert report.slowest < 5.0
    for name, counts in report.per_target.items():  # each file is both refused and (where valid) read
        assert counts["errors"] > 0, name
    assert report.decoded > 0


def test_a_png_chunk_length_past_the_end_is_refused_without_a_huge_allocation(tmp_path):
    import time

    import numpy as np
    import pytest

    from dada import DadaError
    from dada.data.readers import read_png16
    from dada.io import write_image

    path = tmp_path / "d.png"
    write_image(path, np.zeros((16, 24), np.uint16))
    data = bytearray(path.read_bytes())
    data[33:37] = (0x917BF303).to_bytes(4, "big")  # the chunk after IHDR claims 2.4 GB (found by the fuzz)
    path.write_bytes(bytes(data))
    started = time.perf_counter()
    with pytest.raises(DadaError, match="a chunk runs past the end of the file"):
        read_png16(path, "depth")
    assert time.perf_counter() - started < 0.5
