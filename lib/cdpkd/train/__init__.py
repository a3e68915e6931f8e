"""cdpkd.train"""
