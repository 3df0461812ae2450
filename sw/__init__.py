# SPDX-License-Identifier: Apache-2.0
"""Host side: numerics spec, integer reference model, PyTorch model, compiler, driver, CLI."""
