"""What the command line shows a person: a registered model's backtest, its plot, the traders' portfolios.

Each module is a view over the core (the one backtester, the trade journal, the lifecycle
store); none computes a number the core does not define.
"""
