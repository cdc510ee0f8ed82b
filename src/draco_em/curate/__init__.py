"""Micrograph curation: accept or reject each micrograph, with the reason (paper §4.1).

``features`` (DRACO encoder → pooled tile tokens → mean/max over tiles), ``head`` (batch norm +
linear probe and its file), ``labels`` (STAR/CSV labels), ``train``, ``predict``, ``report``
(PNGs), ``baselines`` (ResNet-18 from scratch and a power-spectrum logistic regression).
"""
