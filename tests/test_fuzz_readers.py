"""2,000 byte mutations of real PNG, JPEG and list files through the dataset readers: every case ends in
a DadaError or a well-formed item; never another exception, a crash, a hang or a malformed array (the
10,000-case campaign: ``python benchmarks/faults.py --only fuzz``)."""

from reader_fuzz import fuzz


def test_reader_fuzz_2000_cases_only_our_error_or_a_well_formed_item(tmp_path):
    report = fuzz(tmp_path, cases=2000, seed=0)
    assert report.cases == 2000
    assert report.findings == []
    assert report.slowest < 5.0
    for name, counts in report.per_target.items():  # each file is both refused and (where valid) read
        assert counts["errors"] > 0, name
    assert report.decoded > 0
