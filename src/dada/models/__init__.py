"""dada.models"""
