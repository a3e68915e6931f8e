"""cdpkd.ops"""
