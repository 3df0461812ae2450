# SPDX-License-Identifier: Apache-2.0
"""Amaranth gateware of the lightformer accelerator. Never imports ``sw``."""
