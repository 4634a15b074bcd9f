"""The benches under bench/, each run small as `make bench` runs it: that it still runs through."""
