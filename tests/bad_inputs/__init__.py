"""Bad-input suite (issues 3 and 5): bad files and unwritable outputs through the entry points users hit.

- ``test_npz.py``: a user's ``mnist.npz`` and AdrenalMNIST3D npz (damaged zip, wrong shape / dtype, NaN / inf, empty
  split, ...) through ``mnist_splits`` / ``adrenal_splits`` and ``data_prep/prepare_{mnist,adrenal}.py``;
- ``test_nifti.py``: bad OASIS volumes (reported and skipped, never fatal), inference input files, datalists;
- ``test_outputs.py``: unwritable ``--out`` folders for every data_prep script, and earlier outputs that survive a
  failure half-way through a later run (atomic writes);
- ``test_bundles.py``: a few of the same cases through the bundles' configs;
- ``test_careless_use.py`` (issue 10): bad hyperparameters (one table, checked before any data, the entry named in
  the last line), resumes that cannot succeed, fresh runs over the shipped weights, killed-save leftovers and
  ``n_saved`` across resumes, NaN / truncated / wrong-dimensional files at evaluation, inference and in the Deploy
  loader, a NaN run or a full disk exiting non-zero with the reason, and (slow) the real command lines' exit status
  and last line, plus two-process torchrun runs where one rank fails and every rank stops.

Cases tested before this suite existed stay where they are: ``tests/data/test_mnist.py`` (IDX files, missing
folder / keys / files, garbage npz, label count and range), ``tests/data/test_adrenal.py`` (missing keys / file, 2D
and 5D arrays, dtype, value and label checks), ``tests/data/test_oasis.py`` (``check_volume``, bad subjects in
``build_oasis_datalist``, missing datalist files, invalid JSON) and ``tests/data_prep/*`` (CLI exit codes).
"""
