"""`make bench`: timing of membra's neuron kernels against the memory-bandwidth limit, the
reference loop under torch.compile and peer libraries (results under benchmarks/results/)."""
