variable "cluster_name" {
  description = "Name of the Meridian cluster; prefixes every resource."
  type        = string
  default     = "meridian"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.cluster_name))
    error_message = "cluster_name must be 2 to 21 characters of [a-z0-9-], starting with a letter."
  }
}

variable "region_a" {
  description = "First data region: AWS region name (also the Meridian region id), the VPC CIDR (a /16 that no other region uses) and three availability zone ids."
  type = object({
    name     = string
    cidr     = string
    zone_ids = list(string)
  })
  default = {
    name     = "us-east-1"
    cidr     = "10.10.0.0/16"
    zone_ids = ["use1-az1", "use1-az2", "use1-az4"]
  }

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region_a.name)) && can(cidrnetmask(var.region_a.cidr)) && endswith(var.region_a.cidr, "/16")
    error_message = "region_a needs an AWS region name like us-east-1 and a /16 CIDR."
  }
}

variable "region_b" {
  description = "Second data region: AWS region name (also the Meridian region id), the VPC CIDR (a /16 that no other region uses) and three availability zone ids."
  type = object({
    name     = string
    cidr     = string
    zone_ids = list(string)
  })
  default = {
    name     = "eu-west-1"
    cidr     = "10.20.0.0/16"
    zone_ids = ["euw1-az1", "euw1-az2", "euw1-az3"]
  }

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region_b.name)) && can(cidrnetmask(var.region_b.cidr)) && endswith(var.region_b.cidr, "/16")
    error_message = "region_b needs an AWS region name like eu-west-1 and a /16 CIDR."
  }
}

variable "witness_region" {
  description = "Witness region (votes, stores no data): AWS region name, VPC CIDR and three availability zone ids. Place it where it fails independently of both data regions."
  type = object({
    name     = string
    cidr     = string
    zone_ids = list(string)
  })
  default = {
    name     = "ca-central-1"
    cidr     = "10.30.0.0/16"
    zone_ids = ["cac1-az1", "cac1-az2", "cac1-az4"]
  }

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.witness_region.name)) && can(cidrnetmask(var.witness_region.cidr)) && endswith(var.witness_region.cidr, "/16")
    error_message = "witness_region needs an AWS region name like ca-central-1 and a /16 CIDR."
  }
}

variable "kubernetes_version" {
  description = "EKS Kubernetes minor version for all three clusters."
  type        = string
  default     = "1.34"

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.34."
  }
}

variable "data_node_instance_type" {
  description = "Instance type of the data regions' nodes (a Meridian pod requests 2 vCPU and 4 GiB)."
  type        = string
  default     = "m7i.xlarge"
}

variable "witness_node_instance_type" {
  description = "Instance type of the witness region's nodes."
  type        = string
  default     = "t3.medium"
}

variable "api_public_access_cidrs" {
  description = "Networks allowed to reach the EKS API endpoints from the internet. Empty keeps the endpoints private (reach them through a VPN or bastion)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.api_public_access_cidrs : can(cidrnetmask(c)) && c != "0.0.0.0/0"])
    error_message = "api_public_access_cidrs must be CIDR blocks, and not 0.0.0.0/0."
  }
}

variable "admin_role_arn" {
  description = "IAM role granted cluster-admin on every cluster through an EKS access entry."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.admin_role_arn))
    error_message = "admin_role_arn must be an IAM role ARN."
  }
}

variable "load_balancer_controller_policy_arn" {
  description = "ARN of the IAM policy published with the AWS Load Balancer Controller release you install (create it once per account from that release's iam_policy.json)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:policy/.+$", var.load_balancer_controller_policy_arn))
    error_message = "load_balancer_controller_policy_arn must be an IAM policy ARN."
  }
}

variable "public_zone_name" {
  description = "Existing public Route 53 hosted zone that gets the global and per-region client names, e.g. example.com."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9-]+\\.)+[a-z]{2,}$", var.public_zone_name))
    error_message = "public_zone_name must be a DNS name such as example.com (no trailing dot)."
  }
}

variable "service_name" {
  description = "Label under public_zone_name that clients connect to: <service_name>.<public_zone_name> routes to the nearest healthy data region."
  type        = string
  default     = "meridian"

  validation {
    condition     = can(regex("^[a-z0-9-]{1,63}$", var.service_name))
    error_message = "service_name must be one DNS label."
  }
}

variable "private_zone_name" {
  description = "Private Route 53 zone, shared by the three VPCs, holding repl.<region> for the peer links."
  type        = string
  default     = "meridian.internal"
}

variable "health_check_interval_seconds" {
  description = "Route 53 health check interval on /health/ready: 10 (fast) or 30 (standard)."
  type        = number
  default     = 10

  validation {
    condition     = contains([10, 30], var.health_check_interval_seconds)
    error_message = "Route 53 supports 10 or 30 seconds."
  }
}

variable "dns_ttl_seconds" {
  description = "TTL of the latency records; with the health check interval it bounds how long clients keep resolving to a fenced region."
  type        = number
  default     = 30

  validation {
    condition     = var.dns_ttl_seconds >= 5 && var.dns_ttl_seconds <= 300
    error_message = "dns_ttl_seconds must be between 5 and 300."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
