"""Steering a rollout from the command line: manual requests and the status view.

`plan` decides, from the object as read, which request a command writes or why it writes none;
`view` turns an object and its Events into what `modeldeploy status` shows. Both are pure;
`commands` wires them to the API (modeldeploy.k8s.steering) and the terminal.
"""
