"""cdpkd.sim"""
