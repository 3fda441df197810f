"""What the plugin does with data: the jobs and the commands' engines."""
