"""cdpkd.classic"""
