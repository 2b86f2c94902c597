"""The serving benchmark's parts; bench/serving_bench.py is its command line."""
