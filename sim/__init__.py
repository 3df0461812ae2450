# SPDX-License-Identifier: Apache-2.0
"""cocotb benches, stream drivers and the Verilator runner with its build cache."""
