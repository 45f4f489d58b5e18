"""dada.engine"""
