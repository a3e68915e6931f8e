"""cdpkd.io"""
