# Peers dial repl.<region>.<private zone>:7381, the internal NLB of each
# region on addresses fixed in advance (the overlay's
# aws-load-balancer-private-ipv4-addresses annotation).
resource "aws_route53_zone" "private" {
  # checkov:skip=CKV2_AWS_38: DNSSEC signing is not available for private hosted zones.
  # checkov:skip=CKV2_AWS_39: Query logging applies to public zones; resolver query logging for the VPCs belongs to the platform's network account.
  provider = aws.a
  name     = var.private_zone_name
  comment  = "Meridian replication names for ${var.cluster_name}"

  vpc {
    vpc_id     = module.region_a.network.vpc_id
    vpc_region = var.region_a.name
  }
  vpc {
    vpc_id     = module.region_b.network.vpc_id
    vpc_region = var.region_b.name
  }
  vpc {
    vpc_id     = module.region_witness.network.vpc_id
    vpc_region = var.witness_region.name
  }
}

resource "aws_route53_record" "repl" {
  # checkov:skip=CKV2_AWS_23: The addresses belong to the internal NLB that the AWS Load Balancer Controller creates on them from the meridian-repl Service.
  for_each = {
    (var.region_a.name)       = module.region_a.repl_private_ips
    (var.region_b.name)       = module.region_b.repl_private_ips
    (var.witness_region.name) = module.region_witness.repl_private_ips
  }
  provider = aws.a
  zone_id  = aws_route53_zone.private.zone_id
  name     = "repl.${each.key}.${var.private_zone_name}"
  type     = "A"
  ttl      = 60
  records  = each.value
}

# Clients: <service>.<zone> answers with the lowest-latency data region whose
# /health/ready is 200. A fenced region answers 503, fails its check and
# leaves the answer set by itself. <region>.<service>.<zone> pins a region.
data "aws_route53_zone" "public" {
  provider     = aws.a
  name         = var.public_zone_name
  private_zone = false
}

locals {
  data_regions = {
    (var.region_a.name) = module.region_a.public_ips
    (var.region_b.name) = module.region_b.public_ips
  }
  service_fqdn = "${var.service_name}.${var.public_zone_name}"
}

resource "aws_route53_record" "region" {
  # checkov:skip=CKV2_AWS_23: The records are the Elastic IPs of modules/region (aws_eip.public_nlb), passed through a module output that checkov does not follow.
  for_each = local.data_regions
  provider = aws.a
  zone_id  = data.aws_route53_zone.public.zone_id
  name     = "${each.key}.${local.service_fqdn}"
  type     = "A"
  ttl      = var.dns_ttl_seconds
  records  = each.value
}

resource "aws_route53_health_check" "ready" {
  for_each          = local.data_regions
  provider          = aws.a
  type              = "HTTP"
  fqdn              = "${each.key}.${local.service_fqdn}"
  port              = 7380
  resource_path     = "/health/ready"
  request_interval  = var.health_check_interval_seconds
  failure_threshold = 2
  measure_latency   = true

  tags = {
    Name = "${var.cluster_name}-${each.key}-ready"
  }
}

resource "aws_route53_record" "latency" {
  # checkov:skip=CKV2_AWS_23: The records are the Elastic IPs of modules/region (aws_eip.public_nlb), passed through a module output that checkov does not follow.
  for_each        = local.data_regions
  provider        = aws.a
  zone_id         = data.aws_route53_zone.public.zone_id
  name            = local.service_fqdn
  type            = "A"
  ttl             = var.dns_ttl_seconds
  records         = each.value
  set_identifier  = each.key
  health_check_id = aws_route53_health_check.ready[each.key].id

  latency_routing_policy {
    region = each.key
  }
}

# The health checkers' source ranges, for the overlays' prober policy.
data "aws_ip_ranges" "route53_health_checks" {
  provider = aws.a
  services = ["route53_healthchecks"]
}
