"""Benchmarks of membra's neuron kernels (``membra bench``, ``make bench``): a LIF layer
against the memory-bandwidth limit, the reference loop under torch.compile and the peer
libraries when installed, and a conv SNN training step with peak memory. Timings go to a file
and are never asserted anywhere."""
