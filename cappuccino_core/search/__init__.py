"""Phases 2 and 3: the timeframe search and the training study over PPO agents.

``split`` fixes the time boundaries (search | arena holdout | replay), ``protocol`` is the
out-of-sample validation every trial goes through, ``space`` the hyperparameters searched,
``spec`` what a study is (stored with it, so every worker rebuilds the same objective),
``objective`` one trial end to end, ``summary`` PBO/DSR and the study record, ``timeframe``
the Phase 2 choice, ``retrain`` the best trials refitted and registered, ``runner`` the whole.
"""
