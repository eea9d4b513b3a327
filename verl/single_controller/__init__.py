"""The single controller: a driver calls methods on groups of SPMD workers.

``base`` holds the Ray-free pieces (``Worker``, ``WorkerGroup``, ``ResourcePool``, ``@register``);
``ray`` runs them as Ray actors. Importing this package imports neither Ray nor the subpackages.
"""
