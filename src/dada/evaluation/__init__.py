"""dada.evaluation"""
