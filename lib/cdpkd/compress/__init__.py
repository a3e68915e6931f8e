"""cdpkd.compress"""
