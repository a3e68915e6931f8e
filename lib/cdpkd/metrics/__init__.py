"""cdpkd.metrics"""
