"""Amphora's shared Python library: typed data, tag trees, the deploy manifest,
and the deploy and lot operations that the scripts, the API and the tests share."""
