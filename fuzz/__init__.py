"""Coverage-guided fuzzing of the gateway's parsers with atheris (the `fuzz` extra).

`fuzz.targets` holds one module per target, each with a `one_input(data)` that raises only on a
real bug; they import atheris nowhere, so `tests/test_fuzz_corpus.py` replays the seed corpus
(`fuzz/corpus/`) and every crash found so far (`fuzz/regressions/`) in the normal test suite.
`python -m fuzz.run` replays and then fuzzes each target in its own process (`fuzz.worker`);
`python -m fuzz.seeds` rebuilds the seed corpus from the test messages.
"""
