"""Pixel normalisation constants (pure Python: config files import them).

Kinetics-400 mean / std per RGB channel, on pixels in [0, 1]: torchvision's video models were trained with them,
so their weights (and exports converted from them) expect inputs normalised this way.
"""
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
