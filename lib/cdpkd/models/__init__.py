"""cdpkd.models"""
