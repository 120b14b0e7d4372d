"""numa-balloon guest agent for Linux guests: plugs and unplugs memory blocks per virtual node
and reports each pool's actual size, over HTTP with the domain's guest token."""
