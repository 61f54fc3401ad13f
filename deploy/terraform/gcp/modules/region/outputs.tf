output "cluster_name" {
  description = "GKE cluster name."
  value       = google_container_cluster.this.name
}

output "repl_address" {
  description = "Internal address of meridian-repl."
  value       = google_compute_address.repl.address
}

output "repl_address_name" {
  description = "Name of the reserved internal address."
  value       = google_compute_address.repl.name
}

output "public_address" {
  description = "External address of meridian-global (null for the witness)."
  value       = var.witness ? null : google_compute_address.public[0].address
}

output "public_address_name" {
  description = "Name of the reserved external address (null for the witness)."
  value       = var.witness ? null : google_compute_address.public[0].name
}
