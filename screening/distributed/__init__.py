"""Screening across a Ray cluster (extra ``[distributed]``): the same stages as Ray Data operators.

Ray is imported only inside these modules' functions, so ``screening`` imports and
``screen --help`` work without the extra installed.
"""
