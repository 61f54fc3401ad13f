# One provider for every region: GCP resources name their region themselves.
provider "google" {
  project        = var.project_id
  default_labels = local.labels
}
