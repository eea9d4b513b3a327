"""The single controller: a driver calls methods on groups of SPMD workers.

``base`` holds the Ray-free pieces (``Worker``, ``WorkerGroup``, ``ResourcePool``, ``@register``, colocation);
``ray`` runs them as Ray actors; ``local`` runs one worker in the driver's own process (local mode, no Ray).
Importing this package imports neither Ray nor the subpackages.
"""
