"""IPVS: desired model, reconcile (pure), kernel adapter (netlink), ipvsadm formats."""
