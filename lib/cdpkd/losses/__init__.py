"""cdpkd.losses"""
