"""Implementations behind fastdl.ops and fastdl.optim. Each offers the same functions as the
C++ extension fastdl._fastdl_cpu, with the same arguments."""
